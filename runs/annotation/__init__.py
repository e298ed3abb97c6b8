"""Human labels: the annotation web app and the label files.

Public API, by module:
    esc_eval.runs.annotation.server  -- AnnotationServer (token, Host/Origin checks, blind by default),
                               annotate_command, serve, item_ids
    esc_eval.runs.annotation.labels  -- assignment (who labels what), check_name / check_label,
                               export_labels / import_labels / read_label_file, AnnotationError
Judge-human agreement and the statistics of labels are in ``esc_eval.runs.analysis.agreement``.
"""

__all__ = ["labels", "server"]
