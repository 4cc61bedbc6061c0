"""The domain of the AI Governance Platform: models, services, authorisation, storage, probes.

Nothing in this package imports Flask's request objects: the web layer hands it plain values.
"""
