package app

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/capifcore/capif-security/shared/security"
)

// ReadRegistry reads a registry document (the JSON of `-registry` and `capif-admin import`);
// "-" reads standard input. Validation is the service's (ImportRegistry).
func ReadRegistry(path string) (security.RegistryDoc, error) {
	var doc security.RegistryDoc
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(os.Stdin)
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, fmt.Errorf("registry %s: %w", path, err)
	}
	return doc, nil
}
