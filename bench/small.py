from manim import *


class Small(Scene):
    def construct(self):
        circle = Circle(color=BLUE)
        square = Square(color=RED)
        self.play(Create(circle))
        self.play(Transform(circle, square))
        self.play(square.animate.shift(RIGHT), FadeOut(circle))
        self.play(Rotate(square, PI / 4))
