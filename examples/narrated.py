from manim import *


class Narrated(Scene):
    """Render with narration on (`manimd render examples/narrated.py --narration`,
    or `"narration": true` over HTTP); without it, `narrate` does nothing."""

    def construct(self):
        narrate("Here is a circle.")
        circle = Circle(color=BLUE)
        self.play(Create(circle), run_time=1)
        narrate("It turns into a square, and the video waits for me to finish speaking.")
        self.play(Transform(circle, Square(color=GREEN)), run_time=1)
