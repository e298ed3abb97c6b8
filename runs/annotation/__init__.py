"""Human labels: the annotation web app and the label files.

Public API, by module:
    runs.annotation.server  -- AnnotationServer (token, Host/Origin checks, blind by default),
                               annotate_command, assignment, consensus_labels, export/import of labels
"""

__all__ = ["server"]
