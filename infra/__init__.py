"""The CDK part of the project: the stack (infra/stack.py), its typed settings (infra/config.py) and the cdk-nag
acknowledgements (infra/nag.py)."""
