// Package bootstrap keeps the expiring, use-limited tokens with which a child
// cluster joins its parent. A token is a Secret in the hub's namespace at the
// parent: "<id>.<secret>", where the id names the Secret and the secret is
// compared in constant time. The token's text is never logged.
package bootstrap

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// SecretType marks token Secrets.
const SecretType corev1.SecretType = "edge.fornax.io/bootstrap-token"

const (
	secretPrefix  = "fornax-token-"
	keyID         = "token-id"
	keySecret     = "token-secret"
	keyExpiration = "expiration"
	keyUses       = "uses-remaining"
	keyDesc       = "description"
	idLen         = 6
	secretLen     = 16
	alphabet      = "abcdefghijklmnopqrstuvwxyz0123456789"
)

var tokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

// Errors a join is refused with. Their messages say what to do.
var (
	ErrMalformed = errors.New("the token is malformed: it must look like abcdef.0123456789abcdef; copy it from 'fornaxctl token create'")
	ErrUnknown   = errors.New("the token is not known at the parent (wrong token, or deleted): create one with 'fornaxctl token create' at the parent")
	ErrWrong     = errors.New("the token's secret does not match: copy the whole token from 'fornaxctl token create'")
	ErrExpired   = errors.New("the token has expired: create a new one with 'fornaxctl token create' at the parent")
	ErrUsedUp    = errors.New("the token has already been used as many times as allowed: create a new one with 'fornaxctl token create' at the parent")
)

// Token describes a stored token (without its secret).
type Token struct {
	ID            string    `json:"id"`
	Expires       time.Time `json:"expires"`
	UsesRemaining int       `json:"usesRemaining"`
	Description   string    `json:"description,omitempty"`
}

func random(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b), nil
}

// Create stores a new token valid for ttl and uses joins, and returns its text.
func Create(ctx context.Context, cs kubernetes.Interface, namespace string, ttl time.Duration, uses int, description string) (string, Token, error) {
	if ttl <= 0 {
		return "", Token{}, fmt.Errorf("token lifetime must be positive, got %s", ttl)
	}
	if uses < 1 {
		return "", Token{}, fmt.Errorf("a token must allow at least one join, got %d", uses)
	}
	id, err := random(idLen)
	if err != nil {
		return "", Token{}, err
	}
	secret, err := random(secretLen)
	if err != nil {
		return "", Token{}, err
	}
	t := Token{ID: id, Expires: time.Now().Add(ttl).UTC().Truncate(time.Second), UsesRemaining: uses, Description: description}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretPrefix + id, Namespace: namespace,
			Labels: map[string]string{"app.kubernetes.io/part-of": "fornax"}},
		Type: SecretType,
		StringData: map[string]string{
			keyID: id, keySecret: secret, keyExpiration: t.Expires.Format(time.RFC3339),
			keyUses: strconv.Itoa(uses), keyDesc: description,
		},
	}
	if _, err := cs.CoreV1().Secrets(namespace).Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", Token{}, fmt.Errorf("storing the token: %w", err)
	}
	return id + "." + secret, t, nil
}

func decode(s *corev1.Secret) (Token, string, error) {
	exp, err := time.Parse(time.RFC3339, string(s.Data[keyExpiration]))
	if err != nil {
		return Token{}, "", fmt.Errorf("token %s has a bad expiration: %w", s.Name, err)
	}
	uses, err := strconv.Atoi(string(s.Data[keyUses]))
	if err != nil {
		return Token{}, "", fmt.Errorf("token %s has a bad use count: %w", s.Name, err)
	}
	return Token{ID: string(s.Data[keyID]), Expires: exp, UsesRemaining: uses, Description: string(s.Data[keyDesc])},
		string(s.Data[keySecret]), nil
}

// List returns the stored tokens, soonest to expire first.
func List(ctx context.Context, cs kubernetes.Interface, namespace string) ([]Token, error) {
	secrets, err := cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{FieldSelector: "type=" + string(SecretType)})
	if err != nil {
		return nil, fmt.Errorf("listing tokens: %w", err)
	}
	var out []Token
	for i := range secrets.Items {
		t, _, err := decode(&secrets.Items[i])
		if err != nil {
			continue // not ours to judge; never fail a listing over one bad Secret
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Expires.Before(out[j].Expires) })
	return out, nil
}

// Delete removes a token by id.
func Delete(ctx context.Context, cs kubernetes.Interface, namespace, id string) error {
	err := cs.CoreV1().Secrets(namespace).Delete(ctx, secretPrefix+id, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("no token with id %q: 'fornaxctl token list' shows the tokens", id)
	}
	return err
}

// Check validates a presented token without using it up.
func Check(ctx context.Context, cs kubernetes.Interface, namespace, token string, now time.Time) (*corev1.Secret, error) {
	m := tokenRE.FindStringSubmatch(token)
	if m == nil {
		return nil, ErrMalformed
	}
	s, err := cs.CoreV1().Secrets(namespace).Get(ctx, secretPrefix+m[1], metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && s.Type != SecretType) {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, fmt.Errorf("reading the token: %w", err)
	}
	t, secret, err := decode(s)
	if err != nil {
		return nil, err
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(m[2])) != 1 {
		return nil, ErrWrong
	}
	if now.After(t.Expires) {
		return nil, ErrExpired
	}
	if t.UsesRemaining < 1 {
		return nil, ErrUsedUp
	}
	return s, nil
}

// Use checks a token and consumes one use of it. Concurrent joins with the
// same token cannot use it more often than allowed: the decrement is an
// update conditional on the Secret's resourceVersion.
func Use(ctx context.Context, cs kubernetes.Interface, namespace, token string, now time.Time) error {
	for range 5 {
		s, err := Check(ctx, cs, namespace, token, now)
		if err != nil {
			return err
		}
		uses, _ := strconv.Atoi(string(s.Data[keyUses])) // Check parsed it
		s.Data[keyUses] = []byte(strconv.Itoa(uses - 1))
		_, err = cs.CoreV1().Secrets(namespace).Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("using the token: %w", err)
		}
		return nil
	}
	return errors.New("the token is being used concurrently; retry the join")
}
