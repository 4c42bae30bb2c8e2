"""The automatic range of the record plots holds still while the data stay inside it."""
from explorer.views.steady import steady_range


def test_a_range_holds_while_the_data_fit_and_grows_with_headroom():
    assert steady_range((0, 12.5), (0, 11)) is None  # inside, filling 88 %: kept
    assert steady_range((0, 12.5), (0, 13)) == (0, 16.25)  # left by the top: 25 % of the span above
    assert steady_range((-5, 1), (-6, 0)) == (-7.5, 0)  # left by the bottom: headroom below only
    assert steady_range((0, 100), (0, 10)) == (0, 10)  # filling 10 %: tightened to the data


def test_the_headroom_stops_at_zero_and_one():
    assert steady_range((0.1, 0.5), (0.1, 0.92)) == (0.1, 1.05)  # an accuracy's axis ends near 1
    assert steady_range((0.2, 0.5), (0.02, 0.5)) == (-0.05, 0.5)  # a share's near 0
    assert steady_range((0, 1), (0, 1.5)) == (0, 1.875)  # data beyond 1: the headroom as usual
