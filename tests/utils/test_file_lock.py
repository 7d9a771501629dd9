"""file_lock: exclusive while held, free again after the block (also after an exception)."""
import pytest

from inboxrl.utils.file_lock import file_lock


def test_a_held_lock_excludes_another_holder_until_released(tmp_path):
    path = tmp_path / "sub" / ".x.lock"
    with file_lock(path):
        assert path.exists()
        with pytest.raises(BlockingIOError):
            with file_lock(path, blocking=False):
                pass
    with file_lock(path, blocking=False):  # released
        pass
    with pytest.raises(ValueError):
        with file_lock(path):
            raise ValueError("boom")
    with file_lock(path, blocking=False):  # released by the exception too
        pass
