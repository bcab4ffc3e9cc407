"""Suggested questions for compliance teams, MiCAR first."""

SUGGESTED_QUERIES = [
    "What must a crypto-asset service provider do to obtain authorisation under MiCAR (Articles 59–63)?",
    "What has to be in a MiCAR crypto-asset white paper, and when must it be notified to the competent authority?",
    "What reserve-of-assets rules apply to issuers of asset-referenced tokens under MiCAR (Articles 36–38)?",
    "How must an e-money token issuer invest and safeguard the funds it receives under MiCAR Article 54?",
    "Which MiCAR transitional (grandfathering) provisions apply to CASPs already operating under national law?",
    "What does the Transfer of Funds Regulation require for crypto-asset transfers (the travel rule)?",
    "How do DORA's ICT risk-management requirements apply to a CASP authorised under MiCAR?",
    "When is an asset-referenced or e-money token classified as significant, and what changes for its issuer?",
]
