"""Pure decisions: rules, evaluation, drift, coverage, lifecycle. No SDK, socket, store or clock."""
