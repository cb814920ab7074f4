"""Results schema, atomic writers, plots and the markdown/HTML report (``optimlab report`` renders files)."""

from optimlab.report.schema import VERDICTS, ClaimResult, load_results, write_json_atomic
from optimlab.report.writer import ReportPart, load_part, render_files, write_report

__all__ = ["VERDICTS", "ClaimResult", "ReportPart", "load_part", "load_results", "render_files", "write_json_atomic",
           "write_report"]
