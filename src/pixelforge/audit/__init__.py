"""Audits of datasets: representation, licences, opt-outs, and the checks training runs first."""
