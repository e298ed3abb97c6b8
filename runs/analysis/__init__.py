"""Numbers from a store: leaderboard values, intervals, comparisons, agreement, the report.

Public API, by module (numpy/scipy/statsmodels load only here, when a report is built):
    runs.analysis.scoring      -- leaderboard_value, agreement: ESC-Eval's numbers
    runs.analysis.statistics   -- card-clustered bootstrap intervals, paired differences, PPI, power
    runs.analysis.comparisons  -- every pair of supporters compared on shared cards (Holm-adjusted)
    runs.analysis.robustness   -- rank_agreement: does the supporter ranking hold under another seeker (Kendall's tau)
    runs.analysis.leaderboard  -- build_report -> Report (data), ReportError
    runs.analysis.agreement    -- judge vs human labels (agreement_report, store_agreement), consensus, alpha
    runs.analysis.render       -- render, render_agreement: table, md, json, csv
    runs.analysis.plots        -- plot, plot_comparisons, plot_confusion: PNG
    runs.analysis.report       -- report_command (esc-eval report); re-exports the report API
"""

__all__ = ["agreement", "comparisons", "leaderboard", "plots", "render", "report", "robustness", "scoring", "statistics"]
