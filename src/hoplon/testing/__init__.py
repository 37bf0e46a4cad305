"""Public conformance checks for plugins: ``check_attack`` runs the contract every hoplon attack meets.

Third-party attacks registered through the ``hoplon.attacks`` entry-point group can call these in their
own test suites (as scikit-learn's ``check_estimator``).
"""

from hoplon.testing.contracts import check_attack, check_attack_metadata

__all__ = ["check_attack", "check_attack_metadata"]
