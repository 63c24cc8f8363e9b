"""The paper-scale rehearsal: tiny stand-ins of the paper config's models and hub data sets, built offline
(`build`), and a launched stage killed mid-stage and resumed (`chaos`)."""
