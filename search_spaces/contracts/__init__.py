"""The LEMUR model contract shared by generated model code.

Modules here are complete Python files that generated ``nn_code`` inlines (see ``_codegen``), so
that every candidate is one standalone file: ``Net(in_shape, out_shape, prm, device)`` with
``supported_hyperparameters()``, ``train_setup(prm)`` and ``learn(train_data)``.
"""
