from manim import *


class TextScene(Scene):
    def construct(self):
        title = Text("Render service", font_size=56)
        sub = Text("scenes in, video out").next_to(title, DOWN)
        self.play(Write(title))
        self.play(FadeIn(sub, shift=UP))
        self.wait(0.5)
