"""Exporting a trained module to run without its Python class, checked against the module before it is written."""

from epochal.export.exporter import FORMATS, ExportCheckError, ExportResult, export_module

__all__ = ["FORMATS", "ExportCheckError", "ExportResult", "export_module"]
