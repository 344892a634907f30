"""Many numbers at once: one package.

- ``_items``: one number in and one result out (`BulkRow`, `BulkItem`, the results record,
  when a row is final), `NumberInput`, what a run takes, and one line checked once
  (`SameLine`, `SeenLines`).
- ``_input``: the one reader of numbers files (dialects, headers, bounded lines).
- ``_pacing``: the run's attempt middleware (`Pacer`: rate, `RateSchedule`, `Limiter`).
- ``_summary``: `BulkSummary`, what a run did.
- ``_results``: results files (`ResultsFile`, `read_results`, `to_dataframe`).
- ``_run``: the run engine, `BulkRun` (``client.check_many()``), and its run-level stops.
"""

from ._items import BulkItem, BulkRow, NumberInput, SameLine, SeenLines
from ._pacing import Limiter, RateSchedule
from ._results import ResultsFile, read_results, to_dataframe
from ._run import BulkRun
from ._summary import BulkSummary

__all__ = [
    "BulkItem",
    "BulkRow",
    "BulkRun",
    "BulkSummary",
    "Limiter",
    "NumberInput",
    "RateSchedule",
    "ResultsFile",
    "SameLine",
    "SeenLines",
    "read_results",
    "to_dataframe",
]
