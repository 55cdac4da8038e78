from __future__ import annotations

from chat.render import markdown_render


def test_html_and_script_in_model_output_become_text() -> None:
    html = markdown_render("Look <img src=x onerror=alert(1)> and <script>alert(2)</script>")

    assert html == (
        "<p>Look &lt;img src=x onerror=alert(1)&gt; and &lt;script&gt;alert(2)&lt;/script&gt;</p>\n"
    )


def test_html_block_is_escaped_not_rendered() -> None:
    html = markdown_render(
        '<div onclick="steal()">\n<iframe src="https://evil.example"></iframe>\n</div>'
    )

    assert html == (
        '<p>&lt;div onclick="steal()"&gt;\n'
        '&lt;iframe src="https://evil.example"&gt;&lt;/iframe&gt;\n&lt;/div&gt;</p>\n'
    )


def test_code_block_keeps_language_and_escapes_markup() -> None:
    html = markdown_render("```python\nprint('<b>hi</b>')\n```")

    assert html == (
        "<pre><code class=\"language-python\">print('&lt;b&gt;hi&lt;/b&gt;')\n</code></pre>\n"
    )


def test_javascript_links_lose_their_href_and_others_get_rel() -> None:
    html = markdown_render("[a](javascript:alert(1)) [b](https://example.org/x)")

    assert "javascript:" not in html.replace("[a](javascript:alert(1))", "")
    assert '<a href="https://example.org/x" rel="noopener noreferrer nofollow">b</a>' in html


def test_markdown_structure_survives() -> None:
    html = markdown_render("# Title\n\n- **one**\n- `two`\n\n| a | b |\n|---|---|\n| 1 | 2 |")

    assert "<h1>Title</h1>" in html
    assert "<li><strong>one</strong></li>" in html
    assert "<li><code>two</code></li>" in html
    assert "<td>1</td>" in html
