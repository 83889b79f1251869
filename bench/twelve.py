from manim import *


class Twelve(Scene):
    def construct(self):
        dots = [Dot(point=LEFT * 5 + RIGHT * i, color=BLUE) for i in range(6)]
        for dot in dots:
            self.play(FadeIn(dot, scale=3), run_time=0.5)
        square = Square()
        for i in range(6):
            self.play(square.animate.rotate(PI / 6).shift(UP * 0.2 * (-1) ** i), run_time=0.5)
