"""HTML bodies become readable plain text; plain text stays as it is."""

import pytest

from shared.text import has_text, snippet, to_plain_line, to_plain_text

pytestmark = pytest.mark.unit


def test_html_becomes_text_with_blocks_on_their_own_lines_and_no_scripts():
    html = "<p>Restart <b>ledgerd</b> &amp; check</p><pre>kubectl get pods</pre><script>alert(1)</script>"
    assert to_plain_text(html) == "Restart ledgerd & check\nkubectl get pods"


def test_plain_text_is_kept_and_tidied():
    assert to_plain_text("  a  b \n\n\n c ") == "a b\n\nc"
    assert to_plain_text("if x < 3 and y > 2") == "if x < 3 and y > 2"


def test_tabs_and_runs_of_spaces_become_one_space_and_blank_lines_one():
    assert to_plain_text("a\t\tb \r c\f\vd   e\n \n\t\n\nf\n\ng") == "a b c d e\n\nf\n\ng"


@pytest.mark.parametrize("body", ["", " \n\t", "<p> </p>", "<script>x</script>", "&nbsp;", "<br>", "x", "<p>x</p>"])
def test_has_text_says_whether_the_plain_text_is_empty(body):
    assert has_text(body) == bool(to_plain_text(body))


def test_a_title_becomes_one_line_without_markup():
    assert to_plain_line("<script>alert(1)</script><b>Kafka</b>\n  lag &lt;3") == "Kafka lag <3"


def test_snippet_cuts_at_a_word():
    text = "word " * 100
    cut = snippet(text, 22)
    assert cut.endswith("…") and len(cut) <= 23 and "  " not in cut
