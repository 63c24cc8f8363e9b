"""`python -m ovlt.rehearsal ROOT`: build the rehearsal's stand-ins (see `ovlt.rehearsal.build`)."""

from ovlt.rehearsal.build import main

main()
