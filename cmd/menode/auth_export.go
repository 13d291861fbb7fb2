package main

// auth export and auth import: a backup of the node's key, encrypted with
// a passphrase (persist.EncryptIdentity: scrypt and nacl/secretbox), and
// its restoring onto a root.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/menode/menode/actors"
	"github.com/menode/menode/persist"
	"github.com/menode/menode/wire"
)

// passphraseEnv is read for the passphrase when no --passphrase-file is given.
const passphraseEnv = "MENODE_PASSPHRASE"

type authExportCmd struct {
	Output         string `required:"" type:"path" help:"Write the encrypted key to this file (mode 0600)."`
	Force          bool   `help:"Overwrite the file if it exists."`
	PassphraseFile string `name:"passphrase-file" type:"path" help:"Read the passphrase from the first line of this file (else $MENODE_PASSPHRASE, else it is asked on the terminal)."`
	JSON           bool   `name:"json" help:"Print JSON."`
}

func (c *authExportCmd) Run(e *env) error {
	key, err := persist.LoadIdentity(persist.KeyPath(e.root))
	if err != nil {
		return err
	}
	// Refused before the passphrase is asked for.
	if _, err := os.Lstat(c.Output); err == nil && !c.Force {
		return fmt.Errorf("%s exists; use --force to overwrite it", persist.QuotePath(c.Output))
	}
	pass, err := readPassphrase(c.PassphraseFile, true)
	if err != nil {
		return err
	}
	data, err := persist.EncryptIdentity(key, pass)
	if err != nil {
		return err
	}
	if err := persist.WriteKeyExport(c.Output, data, c.Force); err != nil {
		return err
	}
	if c.JSON {
		return printJSON(keyFileJSON{ID: nodeID(key), File: c.Output})
	}
	fmt.Fprintf(os.Stderr, "the key of %s is in %s, encrypted; keep the file and the passphrase apart\n", nodeID(key), persist.QuotePath(c.Output))
	fmt.Println(nodeID(key))
	return nil
}

type authImportCmd struct {
	File           string `arg:"" type:"path" help:"A file written by auth export."`
	Force          bool   `help:"Replace this root's identity if it has one (the node's did:key changes)."`
	PassphraseFile string `name:"passphrase-file" type:"path" help:"Read the passphrase from the first line of this file (else $MENODE_PASSPHRASE, else it is asked on the terminal)."`
	JSON           bool   `name:"json" help:"Print JSON."`
}

func (c *authImportCmd) Run(e *env) error {
	if actors.Running(e.root) {
		return fmt.Errorf("a node is running on %s; stop it before importing a key", persist.QuotePath(e.root))
	}
	path := persist.KeyPath(e.root)
	if _, err := os.Lstat(path); err == nil && !c.Force {
		return fmt.Errorf("%w at %s; use --force to replace it (the node's did:key changes)", persist.ErrIdentityExists, persist.QuotePath(path))
	}
	data, err := persist.ReadKeyExport(c.File)
	if err != nil {
		return err
	}
	if _, err := persist.ExportedID(data); err != nil {
		return fmt.Errorf("%s: %w", persist.QuotePath(c.File), err)
	}
	pass, err := readPassphrase(c.PassphraseFile, false)
	if err != nil {
		return err
	}
	key, err := persist.DecryptIdentity(data, pass)
	if errors.Is(err, persist.ErrWrongPassphrase) {
		return fmt.Errorf("%w for %s (or the file was changed); nothing was written", err, persist.QuotePath(c.File))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", persist.QuotePath(c.File), err)
	}
	if err := persist.EnsureRoot(e.root); err != nil {
		return err
	}
	if err := persist.ImportIdentity(path, key, c.Force); err != nil {
		return err
	}
	return printIdentity(e, key, c.JSON)
}

// keyFileJSON is what auth export prints with --json.
type keyFileJSON struct {
	ID   wire.NodeID `json:"id"`
	File string      `json:"file"`
}

// readPassphrase is the passphrase from file (its first line), else from
// $MENODE_PASSPHRASE, else asked on the terminal without echo (twice when
// confirm). An empty one is refused.
func readPassphrase(file string, confirm bool) ([]byte, error) {
	var pass []byte
	switch env, ok := os.LookupEnv(passphraseEnv); {
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		defer f.Close()
		line, err := bufio.NewReader(io.LimitReader(f, 64<<10)).ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		pass = bytes.TrimRight(line, "\r\n")
	case ok:
		pass = []byte(env)
	default:
		tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("no passphrase: give --passphrase-file FILE or set %s, or run on a terminal", passphraseEnv)
		}
		defer tty.Close()
		if pass, err = askPassphrase(tty, "Passphrase: "); err != nil {
			return nil, err
		}
		if confirm && len(pass) > 0 {
			again, err := askPassphrase(tty, "Passphrase again: ")
			if err != nil {
				return nil, err
			}
			if !bytes.Equal(pass, again) {
				return nil, errors.New("the passphrases differ; nothing was written")
			}
		}
	}
	if len(pass) == 0 {
		return nil, errors.New("an empty passphrase is refused: the key would be as good as plain text")
	}
	return pass, nil
}

// askPassphrase prompts on the terminal tty and reads a line without echo.
func askPassphrase(tty *os.File, prompt string) ([]byte, error) {
	fmt.Fprint(tty, prompt)
	pass, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("read the passphrase from the terminal: %w", err)
	}
	return pass, nil
}
