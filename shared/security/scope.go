package security

import (
	"fmt"
	"slices"

	"github.com/capifcore/capif-security/shared/capif"
)

// within names the first pair of want (AEFs, then API names, in sorted order) that allowed
// lacks: a token may be granted no API its context does not allow for OAUTH.
func within(want, allowed capif.Scope) error {
	for _, aef := range want.AEFs() {
		if _, ok := allowed[aef]; !ok {
			return fmt.Errorf("AEF %q is not authorized for OAUTH in the API invoker's security context", aef)
		}
		for _, name := range slices.Sorted(slices.Values(want[aef])) {
			if !allowed.Has(aef, name) {
				return fmt.Errorf("API %q of AEF %q is not authorized for OAUTH in the API invoker's security context", name, aef)
			}
		}
	}
	return nil
}
