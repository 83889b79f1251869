from manim import *
import random


class Long(Scene):
    """Twenty-four animations, 24 s at 60 fps: the benchmark's scene for
    split renders, with a `dt` updater, an `always_redraw` and per-frame
    randomness, so a split that were not exact would show."""

    def construct(self):
        dot = Dot(color=YELLOW).shift(LEFT * 4)
        dot.add_updater(lambda m, dt: m.shift(RIGHT * dt * 0.3 + UP * random.uniform(-0.02, 0.02)))
        ring = always_redraw(lambda: Circle(radius=0.4, color=BLUE).move_to(dot))
        self.add(dot, ring)
        shapes = VGroup(*[RegularPolygon(n=3 + i % 5, color=interpolate_color(RED, GREEN, i / 11)).scale(0.6)
                          for i in range(12)]).arrange_in_grid(3, 4).shift(UP * 0.5)
        for i, shape in enumerate(shapes):
            self.play(Create(shape), run_time=1.0)
            self.play(shape.animate.rotate(PI / 3).set_fill(opacity=0.5), run_time=1.0)
