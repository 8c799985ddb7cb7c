"""ciml-ter: monthly terrestrial ecosystem respiration with causal XGBoost and SHAP.

Importing this package is cheap: GPU libraries (CuPy, cuDF, cuML), mpi4py and XGBoost are
imported only by the functions that need them.
"""
__version__ = "0.1.0"
