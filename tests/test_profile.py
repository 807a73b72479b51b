"""convert/profile.py: each section is charged its own time only, nested sections subtracted."""

import time

from deeperfour.convert.profile import NoSections, Sections


def slow(n: int, seconds: float):
    for i in range(n):
        time.sleep(seconds)
        yield i


def test_nested_sections_are_exclusive():
    sec = Sections()
    outer = sec.iterate("outer", (x for x in sec.iterate("inner", slow(3, 0.02))))
    for _ in outer:
        with sec("consumer"):
            time.sleep(0.01)
    assert 0.055 < sec.seconds["inner"] < 0.2  # 3 x 20 ms
    assert sec.seconds["outer"] < 0.02  # only the generator expression's own overhead
    assert 0.025 < sec.seconds["consumer"] < 0.15
    per = sec.per_frame(3)
    assert list(per)[0] == "inner" and abs(per["inner"] - sec.seconds["inner"] / 3) < 1e-12


def test_no_sections_passes_items_through():
    sec = NoSections()
    with sec("x"):
        pass
    assert list(sec.iterate("y", [1, 2])) == [1, 2] and not sec.seconds
