"""Typed errors of the ``ca`` package.

Every error carries a one-line message a person can act on; callers (the CLI,
the gateway) catch ``CAError`` and print the message without a traceback.
"""


class CAError(Exception):
    """Base of every error raised by the ``ca`` package."""


class MalformedInputError(CAError):
    """Input (PEM, DER, CSR, key, attribute certificate, name) could not be used."""


class KeyFileError(CAError):
    """A private key file is missing, unreadable, too open, or the passphrase is wrong."""


class VerificationError(CAError):
    """A certificate, attribute certificate or CRL did not pass verification."""


class SignatureInvalid(VerificationError):
    """The signature does not verify with the issuer's public key."""


class WrongIssuer(VerificationError):
    """The issuer named in the object is not the expected authority."""


class Expired(VerificationError):
    """The validity period ended before the time of the check."""


class NotYetValid(VerificationError):
    """The validity period starts after the time of the check."""


class HolderMismatch(VerificationError):
    """The attribute certificate names another holder than the presented certificate."""


class WrongTarget(VerificationError):
    """The attribute certificate is targeted at another gateway or VM."""


class Revoked(VerificationError):
    """The certificate (or the holder's identity certificate) is revoked."""


class UnknownCriticalExtension(VerificationError):
    """A critical extension this verifier does not understand is present."""


class NotAnAttributeAuthority(VerificationError):
    """The certificate that signed the attribute certificate may not act as an AA."""


class NotAnIdentityCertificate(VerificationError):
    """The certificate lacks clientAuth or is a CA: it cannot identify a user."""
