"""Human labels: the annotation web app and the label files.

Public API, by module:
    esc_eval.runs.annotation.server  -- AnnotationServer (token, Host/Origin checks, blind by default; dimension
                               labels and, on risk and control dialogues, the safety items), annotate_command,
                               serve, item_ids
    esc_eval.runs.annotation.labels  -- assignment (who labels what), check_name / check_label,
                               export_labels / import_labels / read_label_file, AnnotationError
Judge-human agreement and the statistics of labels are in ``esc_eval.runs.analysis.agreement``; on the safety
items, in ``esc_eval.runs.analysis.safety_agreement``.
"""

__all__ = ["labels", "server"]
