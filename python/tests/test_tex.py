from manimd_worker import tex

LOG = r"""This is pdfTeX
(./scene.tex
! Undefined control sequence.
l.7 \frac{1}{\foo
                 {2}}
Here is how much of TeX's memory you used:
! Missing $ inserted.
<inserted text>
                $
l.9 x^2
"""


def test_errors_from_log_keeps_each_error_with_its_line():
    assert tex.errors_from_log(LOG).splitlines() == [
        r"Undefined control sequence. l.7 \frac{1}{\foo",
        "Missing $ inserted. l.9 x^2",
    ]


def test_errors_from_log_without_errors_is_empty():
    assert tex.errors_from_log("all good\nno bangs here\n") == ""


def test_body_of_strips_the_wrapping():
    source = "\n".join(
        [
            r"\documentclass{standalone}",
            r"\begin{document}",
            r"\begin{center}",
            r"\special{dvisvgm:raw <g id='x'>}x^2 + y^2\special{dvisvgm:raw </g>}",
            r"\end{center}",
            r"\end{document}",
        ]
    )
    assert tex.body_of(source) == "x^2 + y^2"
    assert tex.body_of(r"\begin{document}\begin{align*}a\end{align*}\end{document}") == "a"
    assert tex.body_of("  no document  ") == "no document"


def test_tex_failure_carries_message_and_expression():
    err = tex.TexFailure("Undefined control sequence", r"\foo")
    assert (err.tex_message, err.expression, str(err)) == ("Undefined control sequence", r"\foo", "Undefined control sequence")
