"""Numbers from a store: leaderboard values, intervals, comparisons, agreement, the report.

Public API, by module (numpy/scipy/statsmodels load only here, when a report is built):
    runs.analysis.scoring      -- leaderboard_value, agreement: ESC-Eval's numbers
    runs.analysis.statistics   -- card-clustered bootstrap intervals, paired differences, PPI, power
    runs.analysis.comparisons  -- every pair of supporters compared on shared cards (Holm-adjusted)
    runs.analysis.report       -- build_report, report_command: tables, JSON, CSV, plots
"""

__all__ = ["comparisons", "report", "scoring", "statistics"]
