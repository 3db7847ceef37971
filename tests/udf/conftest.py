"""Each UDF test gets an object store of its own, so what one stores is not another's."""

import pytest


@pytest.fixture(autouse=True)
def _own_object_store(settings, tmp_path):
    settings.TRACE_OBJECT_STORE_URL = (tmp_path / "objects").as_uri()
