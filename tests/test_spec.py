import math

import pytest

from suite.spec import DropoutSpec


def test_keep_prob_is_one_minus_rate() -> None:
    assert DropoutSpec.from_rate(0.2).keep_prob == pytest.approx(0.8)
    assert DropoutSpec.from_keep_prob(0.8).rate == pytest.approx(0.2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -0.1, 1.5, "0.5", None, True, [0.5]])
def test_bad_rate_is_rejected_naming_the_value(bad) -> None:
    with pytest.raises(ValueError) as err:
        DropoutSpec.from_rate(bad)
    assert repr(bad) in str(err.value)


@pytest.mark.parametrize("bad", [math.nan, 1.01, -1e-9])
def test_bad_keep_prob_is_rejected_as_keep_prob(bad) -> None:
    with pytest.raises(ValueError, match="keep_prob"):
        DropoutSpec.from_keep_prob(bad)


@pytest.mark.parametrize(
    "field, bad",
    [("scaling", "inverse"), ("broadcast_axes", "0"), ("broadcast_axes", (0, 0)), ("broadcast_axes", (1.0,)),
     ("training", 1), ("seed", -1), ("seed", 1.5), ("dtype", "int8"), ("device", "gpu")],
)
def test_bad_fields_are_rejected(field, bad) -> None:
    with pytest.raises(ValueError) as err:
        DropoutSpec(**{field: bad})
    assert field.split("_")[0] in str(err.value) or repr(bad) in str(err.value)


def test_mask_shape_is_tf_noise_shape() -> None:
    spec = DropoutSpec(broadcast_axes=(2, -1))
    assert spec.mask_shape((8, 3, 5, 7)) == (8, 3, 1, 1)


def test_axis_out_of_range_names_the_axis() -> None:
    with pytest.raises(ValueError, match="axis 4 is out of range for a 2-d input"):
        DropoutSpec(broadcast_axes=(4,)).mask_shape((3, 3))


def test_negative_and_positive_alias_is_rejected() -> None:
    with pytest.raises(ValueError, match="same axis twice"):
        DropoutSpec(broadcast_axes=(1, -1)).mask_shape((3, 3))
