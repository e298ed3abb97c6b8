"""Numbers from a store: leaderboard values, intervals, comparisons, agreement, the report.

Public API, by module (numpy/scipy/statsmodels load only here, when a report is built):
    esc_eval.runs.analysis.scoring      -- leaderboard_value, agreement: ESC-Eval's numbers
    esc_eval.runs.analysis.statistics   -- card-clustered bootstrap intervals, paired differences, PPI, power
    esc_eval.runs.analysis.ppi          -- ppi_mean: the judge corrected by human labels (PPI++), clustered by card
    esc_eval.runs.analysis.comparisons  -- every pair of supporters compared on shared cards (Holm-adjusted)
    esc_eval.runs.analysis.robustness   -- rank_agreement: does the supporter ranking hold under another seeker (Kendall's tau)
    esc_eval.runs.analysis.leaderboard  -- build_report -> Report (data), ReportError
    esc_eval.runs.analysis.agreement    -- judge vs human labels (agreement_report, store_agreement: each annotator), alpha
    esc_eval.runs.analysis.cost         -- report_cost, store_cost: tokens x the store's prices (docs/cost.md)
    esc_eval.runs.analysis.render       -- render, render_agreement: table, md, json, csv
    esc_eval.runs.analysis.plots        -- plot, plot_comparisons, plot_confusion: PNG
    esc_eval.runs.analysis.report       -- report_command (esc-eval report); re-exports the report API
"""

__all__ = ["agreement", "comparisons", "cost", "leaderboard", "plots", "ppi", "render", "report", "robustness", "scoring", "statistics"]
