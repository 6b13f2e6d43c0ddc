"""The model catalog answers without torch, and every entry is what its builder builds."""

from __future__ import annotations

import subprocess
import sys

import pytest
from torch import nn

from fmnist.catalog import CATALOG as RAW_CATALOG
from fmnist.errors import FmnistError
from fmnist.models import (
    CATALOG,
    builders,
    count_parameters,
    create_model,
    get_spec,
    models_table,
    register_model,
    registry,
)


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_entry_builds_with_the_parameter_count_it_declares(name: str) -> None:
    assert count_parameters(create_model(name)) == CATALOG[name].params


def test_every_builder_has_an_entry_and_every_entry_a_builder() -> None:
    names = set(builders())
    assert names == {n for n, info in CATALOG.items() if info.alias_of is None}
    assert all(CATALOG[n].alias_of in names for n in CATALOG if CATALOG[n].alias_of)


def test_an_alias_shares_its_models_builder_and_layer() -> None:
    alias, model = get_spec("cnn2"), get_spec("scratch")
    assert alias.builder is model.builder and alias.target_layer == model.target_layer and alias.alias_of == "scratch"


def test_listing_the_models_imports_no_torch() -> None:
    code = ("import sys; from fmnist.catalog import models_table; models_table(); "
            "print(sorted(m for m in ('torch', 'lightning', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_table_lists_each_model_once_with_its_parameters() -> None:
    lines = models_table().splitlines()
    assert len(lines) == len(CATALOG) + 1 and lines[0].split()[:3] == ["name", "trainable", "params"]
    assert any(line.startswith("deep ") and "94,154" in line for line in lines)


def test_a_model_of_ones_own_joins_the_catalog() -> None:
    @register_model("test-tiny", description="a test model", source="tests")
    def tiny(num_classes: int = 10) -> nn.Module:
        return nn.Linear(784, num_classes)

    try:
        assert get_spec("test-tiny").description == "a test model" and CATALOG["test-tiny"].params is None
        assert "test-tiny" in models_table()
    finally:
        RAW_CATALOG.pop("test-tiny", None)
        registry._BUILDERS.pop("test-tiny", None)
    with pytest.raises(FmnistError, match="Unknown model 'test-tiny'"):
        get_spec("test-tiny")


def test_an_unregistered_name_without_metadata_is_refused() -> None:
    with pytest.raises(FmnistError, match=r"is not in the catalog \(fmnist/catalog.py\): give @register_model"):
        register_model("nameless")(lambda num_classes=10: nn.Linear(784, num_classes))
