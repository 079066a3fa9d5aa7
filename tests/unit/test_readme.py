# SPDX-License-Identifier: Apache-2.0
"""The operator's README stays true: valid reST, every kernel parameter listed."""

from pathlib import Path

import docutils.core

from ironic_python_agent import config

README = Path(__file__).resolve().parents[2] / "README.rst"


def test_readme_is_valid_rest():
    docutils.core.publish_string(README.read_text(), writer="null",
                                 settings_overrides={"report_level": 2, "halt_level": 2})


def test_every_kernel_parameter_is_documented():
    text = README.read_text()
    missing = [key for key, _ in config.param_table() if f"``{key}``" not in text]
    assert not missing, f"README.rst lacks kernel parameters: {missing}"


def test_readme_gives_the_two_commands():
    text = README.read_text()
    assert "./build.sh test" in text and "./build.sh tinyipa" in text


DOC = README.parent / "doc"


def test_every_doc_page_is_valid_rest_and_linked_from_readme():
    pages = sorted(DOC.glob("*.rst"))
    assert pages, "doc/ has no pages"
    text = README.read_text()
    unlinked = [p.name for p in pages if f"<doc/{p.name}>`_" not in text]
    assert not unlinked, f"README.rst does not link doc pages: {unlinked}"
    for page in pages:
        docutils.core.publish_string(page.read_text(), writer="null",
                                     settings_overrides={"report_level": 2, "halt_level": 2})
