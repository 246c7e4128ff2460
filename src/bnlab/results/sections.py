"""Which report sections a study has: the three of ``bnlab.results.studies`` (and those the
literature studies of ``bnlab.lab.literature`` register there), then ``bnlab.results.literature``.

    for_experiment(spec) -> sections(arms, save, confidence) -> [blocks]   (None: not a study)

It sits above both, so neither imports the other.
"""

from bnlab.results import literature, studies


def for_experiment(spec):
    """The study sections of the experiment ``spec`` describes (a report spec: its name), as
    ``bnlab.results.report.write_report``'s ``sections``; None for an experiment without any."""
    name = spec["name"] if isinstance(spec, dict) else spec.name
    return studies.SECTIONS.get(name) or literature.SECTIONS.get(name)
