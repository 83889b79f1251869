from manimd_worker import memory


def test_small_frames_keep_glibcs_defaults():
    assert not memory.for_frames(854, 480)
    assert not memory.for_frames(1280, 720)


def test_large_frames_reach_mallopt():
    # The engine's Python finds the C library through ctypes and mallopt
    # takes both settings (it answers 0 for one it refuses).
    assert memory.for_frames(1920, 1080)
    assert memory.for_frames(3840, 2160)
