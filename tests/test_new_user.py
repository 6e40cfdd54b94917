"""What a new user trips over (issue 23): the data folder, wording and evaluation kinds."""

from __future__ import annotations

import shutil
from pathlib import Path

from core.config import SAMPLE_DATA
from core.datafiles import list_data_files
from tests.test_dashboard_apptest import BUILD, by_label, page, run


def test_the_data_folder_offers_the_teams_files_first_and_never_the_sample(lab: Path) -> None:
    data = lab / "data"
    assert (data / "sample.json").is_file()  # the checkout's data folder holds the sample
    shutil.copy(SAMPLE_DATA, data / "train.json")
    (data / "uploads").mkdir()
    shutil.copy(SAMPLE_DATA, data / "uploads" / "a-upload.json")
    assert list_data_files() == ["train.json", "uploads/a-upload.json"]
    at = run(page(BUILD))
    at.radio(key="source").set_value("File in the data folder")
    run(at)
    assert by_label(at.selectbox, "Dataset file").value == "train.json"
