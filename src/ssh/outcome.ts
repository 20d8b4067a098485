// Turning how the ssh process of `burg pull` ended into burg's exit code and, for burg's own
// failures, a message (pure; unit-tested).
//
// ssh exits with the remote command's status, or 255 for its own failures, which are told apart
// by ssh's message on stderr. The remote script exits with borg's status (0 success, 1 warning,
// 2 error; 128+N when borg died of signal N) or with one of REMOTE_EXIT for failures on the
// client, whose message the script has already printed.

import { REMOTE_EXIT } from "./remote-script.ts";

export interface PullOutcome {
  exitCode: number;
  /** burg's own explanation (printed as "burg pull: …"), or null when borg's output says it all. */
  message: string | null;
  kind:
    | "borg"
    | "auth"
    | "forwarding"
    | "connect"
    | "host-key"
    | "ssh"
    | "no-borg"
    | "no-bridge"
    | "sudo"
    | "setup"
    | "borg-signal"
    | "path-not-allowed";
}

const SSH_FAILURE = 255;

export function classifyPull(sshStatus: number, stderrTail: string, destination: string, repo: string): PullOutcome {
  const has = (re: RegExp) => re.test(stderrTail);
  if (sshStatus === SSH_FAILURE) {
    if (has(/remote port forwarding failed|forwarding failed for listen path/i)) {
      return {
        exitCode: 2,
        kind: "forwarding",
        message:
          `ssh to ${destination} could not forward burg's socket: the client's sshd refused it. Its sshd_config ` +
          "must allow it (AllowStreamLocalForwarding yes; OpenSSH 9 also refuses with AllowTcpForwarding no), and " +
          "an authorized_keys line with 'restrict' needs 'port-forwarding' too",
      };
    }
    if (has(/Permission denied \(|Too many authentication failures|no such identity|Authentication failed/i)) {
      return {
        exitCode: 2,
        kind: "auth",
        message: `ssh authentication to ${destination} failed (check the key given with -i and the client's authorized_keys)`,
      };
    }
    if (has(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No .* host key is known/i)) {
      return {
        exitCode: 2,
        kind: "host-key",
        message: `ssh could not verify the host key of ${destination} (add it to known_hosts first, e.g. by one interactive ssh login)`,
      };
    }
    if (has(/Connection refused|Could not resolve hostname|No route to host|Connection timed out|Network is unreachable|Connection closed by|kex_exchange_identification/i)) {
      return { exitCode: 2, kind: "connect", message: `ssh could not connect to ${destination} (see ssh's message above)` };
    }
    return { exitCode: 2, kind: "ssh", message: `ssh to ${destination} failed (exit status 255; see its message above)` };
  }
  switch (sshStatus) {
    case REMOTE_EXIT.noSocket:
      return { exitCode: 2, kind: "forwarding", message: `the forwarding of burg's socket to ${destination} was refused` };
    case REMOTE_EXIT.noBorg:
      return { exitCode: 2, kind: "no-borg", message: `borg is missing on ${destination}` };
    case REMOTE_EXIT.noBridge:
      return { exitCode: 2, kind: "no-bridge", message: `nothing on ${destination} can connect borg to burg's socket` };
    case REMOTE_EXIT.sudoRefused:
      return { exitCode: 2, kind: "sudo", message: `sudo on ${destination} refused to run borg` };
    case REMOTE_EXIT.setup:
      return { exitCode: 2, kind: "setup", message: `setting up the backup on ${destination} failed` };
  }
  if (sshStatus === 2 && has(/Repository path not allowed/)) {
    return {
      exitCode: 2,
      kind: "path-not-allowed",
      message:
        `the client's borg asked for a repository other than ${repo}; burg pull serves only --repo ` +
        "(refer to it as '::archive' or leave the repository out: BORG_REPO is set on the client)",
    };
  }
  if (sshStatus >= 0 && sshStatus <= 2) return { exitCode: sshStatus, kind: "borg", message: null };
  if (sshStatus > 128 && sshStatus < 128 + 65) {
    return { exitCode: 2, kind: "borg-signal", message: `borg on ${destination} was killed by signal ${sshStatus - 128}` };
  }
  return { exitCode: 2, kind: "borg", message: `borg on ${destination} ended with exit status ${sshStatus}` };
}
