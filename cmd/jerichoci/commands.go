package main

import "context"

// command is one command of jerichoci. run returns the process exit code.
type command struct {
	name, summary string
	run           func(ctx context.Context, c *cli, args []string) int
}

// commandTable is every command of jerichoci, sorted by name as `jerichoci
// help` lists them.
func commandTable() []command {
	return []command{
		{"cancel", "cancel a queued or running daemon job", runCancel},
		{"enqueue", "queue a lane or target for the daemon; --wait follows it to its result", runEnqueue},
		{"gc", "keep the newest runs (--keep-runs N, default 10), remove the rest (pikaci's gc)", runGC},
		{"image", "build and import the runner image of a guest role", runImage},
		{"lanes", "list the CI lanes or select those a change needs", runLanes},
		{"list", "list runs, newest first: id, status, target, created_at (pikaci's list)", runList},
		{"logs", "print a job's host and guest logs (pikaci's logs)", runLogs},
		{"prepared-outputs", "print a run's prepared outputs (pikaci's prepared-outputs)", runPreparedOutputs},
		{"rerun", "run an earlier run's target again on its snapshot (pikaci's rerun)", runRerun},
		{"run", "run one lane or target locally in throwaway Incus instances", runRun},
		{"runs", "list, show, read the logs of and clean up run records", runRuns},
		{"serve", "run the daemon: workers pull job specs from NATS JetStream and run them", runServe},
		{"staged-linux-remote-defaults", "print the staged Linux SSH build host's defaults (pikaci's)", runStagedLinuxRemoteDefaults},
		{"staged-linux-target-info", "print a staged target's shared prepare node and Nix outputs (pikaci's)", runStagedLinuxTargetInfo},
		{"status", "print a run's status lines (pikaci's status)", runStatus},
		{"targets", "list the catalog's targets or show one", runTargets},
		{"version", "print the version", runVersion},
	}
}

// lookupCommand finds the command called name.
func lookupCommand(name string) (command, bool) {
	for _, cmd := range commandTable() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return command{}, false
}
