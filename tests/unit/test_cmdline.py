# SPDX-License-Identifier: Apache-2.0
from ironic_python_agent import cmdline, net


def test_parse_keeps_key_values_and_drops_bare_words():
    params = cmdline.parse_cmdline(
        'BOOT_IMAGE=/vmlinuz ro quiet ipa-api-url=http://10.0.2.2:6385 '
        'ipa-insecure=1 BOOTIF=01-52-54-00-12-34-56 a=b=c\n')
    assert params == {"BOOT_IMAGE": "/vmlinuz", "ipa-api-url": "http://10.0.2.2:6385",
                      "ipa-insecure": "1", "BOOTIF": "01-52-54-00-12-34-56", "a": "b=c"}


def test_parse_quoted_and_unbalanced():
    assert cmdline.parse_cmdline('x="a b" y=1') == {"x": "a b", "y": "1"}
    assert cmdline.parse_cmdline('x="a y=1') == {"x": '"a', "y": "1"}


def test_parameters_txt_lines():
    text = "ipa-api-url=http://192.0.2.1:6385\nipa-agent-token=abc\n\nBOOTIF=52:54:00:aa:bb:cc\n"
    assert cmdline.parse_parameters_txt(text)["ipa-agent-token"] == "abc"


def test_load_params_from_file_and_extra(tmp_path):
    f = tmp_path / "cmdline"
    f.write_text("ipa-api-url=http://a:1 ipa-debug=1\n")
    params = cmdline.load_params(str(f), extra={"ipa-debug": "0"})
    assert params == {"ipa-api-url": "http://a:1", "ipa-debug": "0"}
    assert cmdline.load_params(str(tmp_path / "missing")) == {}


def test_bootif_forms():
    assert net.bootif_mac("01-52-54-00-12-34-56") == "52:54:00:12:34:56"
    assert net.bootif_mac("52:54:00:12:34:56") == "52:54:00:12:34:56"
    assert net.bootif_mac("nonsense") is None
    assert net.bootif_mac(None) is None


def test_list_macs_puts_bootif_first(tmp_path):
    for name, kind, mac in (("eth0", "1", "52:54:00:00:00:01"), ("eth1", "1", "52:54:00:00:00:02"),
                            ("lo", "772", "00:00:00:00:00:00"), ("ib0", "32", "80:00:00:00")):
        d = tmp_path / name
        d.mkdir()
        (d / "type").write_text(kind + "\n")
        (d / "address").write_text(mac + "\n")
    assert net.list_macs(str(tmp_path)) == ["52:54:00:00:00:01", "52:54:00:00:00:02"]
    assert net.list_macs(str(tmp_path), bootif="01-52-54-00-00-00-02") == [
        "52:54:00:00:00:02", "52:54:00:00:00:01"]
