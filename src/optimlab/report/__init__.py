"""Results schema, atomic writers and the markdown/HTML report with plots."""

from optimlab.report.schema import VERDICTS, ClaimResult, load_results, write_json_atomic

__all__ = ["VERDICTS", "ClaimResult", "load_results", "write_json_atomic"]
