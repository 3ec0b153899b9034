"""Pedigree: family trees in the standardized human pedigree nomenclature (issue 9).

Under construction and not registered yet: no entry point, no hooks. So far only the pure-Python
heart exists — the model and its validation (``model``), the layout (``layout``), the SVG
rendering (``svg``) and the linkage/PLINK PED format (``ped``); tables, routes, the editor and the
other exports come later.
"""
