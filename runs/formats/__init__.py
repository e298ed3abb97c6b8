"""Files in and out of a store: ESC-Eval's result/score JSON, our JSONL, judging of transcript files.

Public API, by module:
    esc_eval.runs.formats.exchange   -- export_esc_eval, export_jsonl, write_json/write_text (atomic)
    esc_eval.runs.formats.importing  -- import_command, import_esc_eval, import_jsonl (idempotent by key)
    esc_eval.runs.formats.judging    -- judge_transcripts: ``esc-eval judge FILE``
"""

__all__ = ["exchange", "importing", "judging"]
