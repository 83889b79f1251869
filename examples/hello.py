# The example that `./dev run` renders: shapes, a transform and text.
from manim import *


class Hello(Scene):
    def construct(self):
        circle = Circle(color=BLUE, fill_opacity=0.3)
        square = Square(color=YELLOW)
        self.play(Create(circle))
        self.play(Transform(circle, square))
        self.play(Write(Text("Hello from manimd").next_to(square, DOWN)))
        self.wait(0.5)
