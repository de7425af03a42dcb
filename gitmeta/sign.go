package gitmeta

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/openpm/opm"
)

// Signed commits (docs/design.md §3): with a signing key, every commit opm
// writes carries git's gpgsig header holding an SSH signature (SSHSIG,
// namespace "git", SHA-512) of the commit without that header — what git
// writes with gpg.format=ssh, so `git verify-commit` and
// `git log --show-signature` accept it given an allowedSignersFile.

// CommitSigner signs a commit: the armored signature of its bytes as
// encoded without a signature.
type CommitSigner interface {
	SignCommit(data []byte) (string, error)
	// PublicKey is the key that signs, or why there is none.
	PublicKey() (ssh.PublicKey, error)
}

// sshSigner signs with an SSH key, its own or one in ssh-agent.
type sshSigner struct{ key ssh.Signer }

func (s sshSigner) SignCommit(data []byte) (string, error) {
	sig, err := sshsig.Sign(bytes.NewReader(data), s.key, sshsig.HashSHA512, "git")
	if err != nil {
		return "", fmt.Errorf("sign the commit with %s: %w", ssh.FingerprintSHA256(s.key.PublicKey()), err)
	}
	return string(sshsig.Armor(sig)), nil
}

// failedSigner is a signing key that could not be loaded: every commit
// fails with why, rather than being written unsigned.
type failedSigner struct{ err error }

func (s failedSigner) SignCommit([]byte) (string, error) { return "", s.err }

func (s failedSigner) PublicKey() (ssh.PublicKey, error) { return nil, s.err }

func (s sshSigner) PublicKey() (ssh.PublicKey, error) { return s.key.PublicKey(), nil }

func (s agentSigner) PublicKey() (ssh.PublicKey, error) { return s.pub, nil }

// SigningKey loads the SSH signing key git's user.signingkey names, as git
// takes it with gpg.format=ssh: the path of a private key (OpenSSH format,
// without a passphrase), the path of a public key whose private key is in
// ssh-agent ($SSH_AUTH_SOCK of getenv), or a public key given literally as
// "key::ssh-ed25519 AAAA…" (in ssh-agent too). A key that cannot be loaded
// gives a signer whose every signature fails, saying why: opm never writes
// an unsigned commit where a signed one was asked for. Nothing is held open
// (the agent is asked at each signature).
func SigningKey(value string, getenv func(string) string) CommitSigner {
	s, err := loadSigningKey(value, getenv)
	if err != nil {
		return failedSigner{opm.Errorf(opm.ErrInvalid, "signing key %s: %w", value, err)}
	}
	return s
}

func loadSigningKey(value string, getenv func(string) string) (CommitSigner, error) {
	var pubText []byte
	if lit, ok := strings.CutPrefix(value, "key::"); ok {
		pubText = []byte(lit)
	} else {
		p := value
		if rest, ok := strings.CutPrefix(p, "~/"); ok {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, err
			}
			p = filepath.Join(home, rest)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		key, err := ssh.ParsePrivateKey(b)
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
			return sshSigner{key}, nil
		case errors.As(err, &missing):
			return nil, errors.New("the private key has a passphrase: add it to ssh-agent (ssh-add) and name its .pub file")
		}
		pubText = b
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubText)
	if err != nil {
		return nil, errors.New("neither an OpenSSH private key nor a public key")
	}
	sock := getenv("SSH_AUTH_SOCK")
	if sock == "" {
		return nil, errors.New("a public key, and no ssh-agent to hold its private key ($SSH_AUTH_SOCK is not set)")
	}
	return agentSigner{sock: sock, pub: pub}, nil
}

// agentSigner signs with the key pub that the ssh-agent at sock holds. It
// asks the agent at each signature, over a connection of its own: an
// update that commits nothing opens none, and one replayed after a lost
// race signs again.
type agentSigner struct {
	sock string
	pub  ssh.PublicKey
}

func (s agentSigner) SignCommit(data []byte) (string, error) {
	conn, err := net.Dial("unix", s.sock)
	if err != nil {
		return "", fmt.Errorf("ssh-agent: %w", err)
	}
	defer conn.Close()
	signers, err := agent.NewClient(conn).Signers()
	if err != nil {
		return "", fmt.Errorf("ssh-agent: %w", err)
	}
	for _, key := range signers {
		if bytes.Equal(key.PublicKey().Marshal(), s.pub.Marshal()) {
			return sshSigner{key}.SignCommit(data)
		}
	}
	return "", opm.Errorf(opm.ErrInvalid, "ssh-agent holds no key %s (ssh-add it)", ssh.FingerprintSHA256(s.pub))
}
