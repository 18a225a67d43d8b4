"""The NTIRE 2024-2026 challenges' measurement protocol, beside ours
(``python -m proxies.profile --protocol ntire2024``)."""
