import pytest

pytestmark = pytest.mark.usefixtures("one_thread")
