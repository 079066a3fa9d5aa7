# SPDX-License-Identifier: Apache-2.0
import pytest
from oslo_config import cfg

from ironic_python_agent import config


def load(params=None, argv=(), files=()):
    return config.load(params or {}, list(argv), conf=cfg.ConfigOpts(),
                       config_files=list(files), config_dirs=[])


def test_defaults_match_upstream():
    conf = load()
    assert conf.listen_port == 9999 and conf.advertise_port == 9999
    assert conf.lookup_timeout == 600 and conf.lookup_interval == 1
    assert conf.enable_auto_tls is True and conf.insecure is False
    assert conf.permitted_image_formats == ["raw", "gpt", "qcow2"]
    assert conf.mdns.use_mdns is False


def test_kernel_params_are_defaults_and_files_override(tmp_path):
    f = tmp_path / "agent.conf"
    f.write_text("[DEFAULT]\nlisten_port = 8443\n")
    conf = load({"ipa-api-url": "http://a:6385,https://b", "ipa-insecure": "1",
                 "ipa-listen-port": "7000", "ipa-use-mdns": "yes"}, files=[str(f)])
    assert config.api_urls(conf) == ["http://a:6385", "https://b"]
    assert conf.insecure is True
    assert conf.listen_port == 8443  # the file beats the kernel command line
    assert conf.mdns.use_mdns is True


def test_cli_beats_files(tmp_path):
    f = tmp_path / "agent.conf"
    f.write_text("[DEFAULT]\napi_url = http://file:6385\n")
    conf = load(files=[str(f)], argv=["--api_url", "http://cli:6385", "--standalone"])
    assert conf.api_url == "http://cli:6385" and conf.standalone is True


@pytest.mark.parametrize("key,value,needle", [
    ("ipa-api-url", "ftp://x", "ipa-api-url='ftp://x'"),
    ("ipa-api-url", "http://", "ipa-api-url='http://'"),
    ("ipa-listen-port", "abc", "ipa-listen-port='abc'"),
    ("ipa-listen-port", "70000", "ipa-listen-port='70000'"),
    ("ipa-insecure", "maybe", "ipa-insecure='maybe'"),
    ("ipa-tls-min-version", "1.0", "ipa-tls-min-version='1.0'"),
])
def test_bad_kernel_values_name_key_and_value(key, value, needle):
    with pytest.raises(config.ConfigError) as exc:
        load({key: value})
    assert needle in str(exc.value)


def test_bad_file_value_names_option(tmp_path):
    f = tmp_path / "agent.conf"
    f.write_text("[DEFAULT]\nlookup_timeout = soon\n")
    with pytest.raises(config.ConfigError) as exc:
        load(files=[str(f)])
    assert "lookup_timeout" in str(exc.value)


def test_param_table_covers_the_documented_keys():
    keys = dict(config.param_table())
    for key in ("ipa-api-url", "ipa-insecure", "ipa-inspection-callback-url", "ipa-agent-token",
                "ipa-lookup-timeout", "ipa-use-mdns"):
        assert key in keys
