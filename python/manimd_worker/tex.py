"""LaTeX failures, caught at the engine's compiler call and raised as one type."""

import re


class TexFailure(Exception):
    def __init__(self, message, expression):
        super().__init__(message)
        self.tex_message = message
        self.expression = expression


def errors_from_log(log_text):
    """TeX's own error lines (`! ...`) with the line that locates each."""
    lines = log_text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.startswith("!"):
            context = [line[1:].strip()]
            for follow in lines[i + 1 : i + 4]:
                if follow.startswith("l."):
                    context.append(follow)
                    break
            found.append(" ".join(context))
    return "\n".join(found)


def body_of(tex_source):
    """The expression a generated .tex file typesets, without the wrapping."""
    match = re.search(r"\\begin\{document\}(.*)\\end\{document\}", tex_source, re.S)
    body = match.group(1) if match else tex_source
    body = re.sub(r"\\special\{dvisvgm:raw [^}]*\}", "", body)
    body = re.sub(r"\\begin\{(center|align\*)\}|\\end\{(center|align\*)\}", "", body)
    return body.strip()
