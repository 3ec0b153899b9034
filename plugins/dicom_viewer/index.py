"""Group instances into studies and series, for the plugin's tables (later) and the study list.

:func:`instance_info` reads what the index needs from a dataset (header only); :func:`build_index`
groups any number of them: studies by Study Instance UID, series by Series Instance UID, sorted by
date, series number and instance number, with instance and frame counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from pydicom.dataset import Dataset


@dataclass(frozen=True)
class InstanceInfo:
    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    series_instance_uid: str
    modality: str = ""
    study_date: str = ""
    study_description: str = ""
    series_description: str = ""
    series_number: int | None = None
    instance_number: int | None = None
    frames: int = 1
    rows: int = 0
    columns: int = 0
    path: str = ""  # where the stored (de-identified) file is


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def instance_info(ds: Dataset, path: str = "") -> InstanceInfo:
    return InstanceInfo(
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.get("SOPClassUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "") or ""),
        study_date=str(ds.get("StudyDate", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""),
        series_number=_int(ds.get("SeriesNumber")),
        instance_number=_int(ds.get("InstanceNumber")),
        frames=max(1, _int(ds.get("NumberOfFrames")) or 1),
        rows=_int(ds.get("Rows")) or 0,
        columns=_int(ds.get("Columns")) or 0,
        path=path,
    )


@dataclass
class Series:
    series_instance_uid: str
    modality: str = ""
    description: str = ""
    number: int | None = None
    instances: list[InstanceInfo] = field(default_factory=list)

    @property
    def instance_count(self) -> int:
        return len(self.instances)

    @property
    def frame_count(self) -> int:
        return sum(i.frames for i in self.instances)


@dataclass
class Study:
    study_instance_uid: str
    date: str = ""
    description: str = ""
    series: list[Series] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series if s.modality})

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for s in self.series)

    @property
    def frame_count(self) -> int:
        return sum(s.frame_count for s in self.series)


def _order(n: int | None) -> tuple[int, int]:
    return (0, n) if n is not None else (1, 0)


def build_index(instances: Iterable[InstanceInfo]) -> list[Study]:
    """Studies (newest first, then by UID), their series and instances, sorted; duplicates (same SOP
    Instance UID) counted once."""
    studies: dict[str, Study] = {}
    series: dict[tuple[str, str], Series] = {}
    seen: set[str] = set()
    for info in instances:
        if info.sop_instance_uid in seen:
            continue
        seen.add(info.sop_instance_uid)
        study = studies.get(info.study_instance_uid)
        if study is None:
            study = studies[info.study_instance_uid] = Study(info.study_instance_uid, info.study_date,
                                                             info.study_description)
        study.date = study.date or info.study_date
        study.description = study.description or info.study_description
        key = (info.study_instance_uid, info.series_instance_uid)
        s = series.get(key)
        if s is None:
            s = series[key] = Series(info.series_instance_uid, info.modality, info.series_description,
                                     info.series_number)
            study.series.append(s)
        s.instances.append(info)
    for study in studies.values():
        for s in study.series:
            s.instances.sort(key=lambda i: (_order(i.instance_number), i.sop_instance_uid))
        study.series.sort(key=lambda s: (_order(s.number), s.series_instance_uid))
    return sorted(studies.values(), key=lambda st: (st.date == "", _neg(st.date), st.study_instance_uid))


def _neg(date: str) -> str:
    """A key that sorts dates (YYYYMMDD) newest first."""
    return "".join(chr(0x7F - ord(ch)) for ch in date)
