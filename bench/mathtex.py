from manim import *


class MathTexScene(Scene):
    def construct(self):
        eq = MathTex(r"\sum_{n=1}^\infty \frac{1}{n^2} = \frac{\pi^2}{6}")
        other = MathTex(r"e^{i\pi} + 1 = 0").next_to(eq, DOWN)
        self.play(Write(eq))
        self.play(FadeIn(other))
