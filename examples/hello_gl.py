# The same idea in ManimGL's dialect: note `manimlib` and ShowCreation.
from manimlib import *


class HelloGL(Scene):
    def construct(self):
        circle = Circle(color=BLUE)
        square = Square(color=YELLOW)
        self.play(ShowCreation(circle))
        self.play(Transform(circle, square))
        self.play(Write(Text("Hello from manimd").next_to(square, DOWN)))
        self.wait(0.5)
