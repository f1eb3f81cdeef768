package rest

import (
	"net/http"
)

// Route is one entry of the API's table: what is served, who may call
// it, and what the OpenAPI document says of it.
type Route struct {
	Method  string
	Path    string // a ServeMux pattern's path: /api/rooms/{id}
	Auth    Auth
	Handler http.HandlerFunc

	// OperationID and Summary (and Description, when set) name the
	// operation in the OpenAPI document.
	OperationID, Summary, Description string
	// Query is the operation's query parameters, a JSON array of
	// OpenAPI parameter objects; empty: none.
	Query Schema
	// Body is the request body's schema (raw JSON, or Ref); empty: no
	// body. BodyRequired marks one that may not be left out.
	Body         Schema
	BodyRequired bool
	// Status is the success status; Answer describes it and Result is
	// its body's schema (empty: no body).
	Status int
	Answer string
	Result Schema
	// Errors are the failure statuses besides those that Auth (401) and
	// a body (400, 413, 422) imply; each is in components/responses.
	Errors []int
}

// Schema is a JSON schema as raw JSON.
type Schema string

// Ref is a schema of components/schemas.
func Ref(name string) Schema { return Schema(`{"$ref":"#/components/schemas/` + name + `"}`) }

// table is every route of the API, in the order the document lists them.
func (a *API) table() []Route {
	return []Route{
		{Method: "POST", Path: "/api/rooms", Auth: Admin, Handler: a.createRoom,
			OperationID: "createRoom", Summary: "Create a room that stays until deleted",
			Body: Ref("RoomCreate"), BodyRequired: true, Status: 201, Answer: "The room", Result: Ref("Room"), Errors: []int{409, 507}},
		{Method: "GET", Path: "/api/rooms", Auth: Admin, Handler: a.listRooms,
			OperationID: "listRooms", Summary: "List rooms with live peer counts",
			Description: "In a cluster, every node's rooms (gathered by the node asked; a node that does not answer is named in the X-Matinee-Partial header) and the rooms made through the API that no node holds right now.",
			Query:       `[{"name":"scope","in":"query","required":false,"description":"node: only the rooms of the node asked","schema":{"type":"string","enum":["cluster","node"]}}]`,
			Status:      200, Answer: "Every room", Result: `{"type":"object","required":["rooms"],"properties":{"rooms":{"type":"array","items":{"$ref":"#/components/schemas/Room"}}}}`},
		{Method: "GET", Path: "/api/rooms/{id}", Auth: KeyOrToken, Handler: a.getRoom,
			OperationID: "getRoom", Summary: "A room with its participants, what each publishes, and the playback state",
			Description: "Takes the API key, or a join token for this room.",
			Status:      200, Answer: "The room", Result: Ref("RoomDetail"), Errors: []int{404}},
		{Method: "PATCH", Path: "/api/rooms/{id}", Auth: Admin, Handler: a.updateRoom,
			OperationID: "updateRoom", Summary: "Change some of a room's settings",
			Body: Ref("RoomUpdate"), BodyRequired: true, Status: 200, Answer: "The room", Result: Ref("RoomDetail"), Errors: []int{404}},
		{Method: "DELETE", Path: "/api/rooms/{id}", Auth: Admin, Handler: a.deleteRoom,
			OperationID: "deleteRoom", Summary: "Delete a room; everyone in it is told and disconnected",
			Status: 204, Answer: "Deleted", Errors: []int{404}},
		{Method: "POST", Path: "/api/rooms/{id}/tokens", Auth: Admin, Handler: a.mintToken,
			OperationID: "createToken", Summary: "Mint a join token (JWT, HS256)",
			Body: Ref("TokenRequest"), Status: 201, Answer: "The token", Result: Ref("Token"), Errors: []int{404}},
		{Method: "POST", Path: "/api/rooms/{id}/hls-url", Auth: KeyOrToken, Handler: a.hlsURL,
			OperationID: "createHLSURL", Summary: "Sign a URL to the room's live HLS, for players that cannot send headers",
			Body: Ref("HLSURLRequest"), Status: 200, Answer: "The signed URL", Result: Ref("HLSURL"), Errors: []int{404}},
		{Method: "POST", Path: "/api/rooms/{id}/participants/{identity}/kick", Auth: Admin, Handler: a.kick,
			OperationID: "kickParticipant", Summary: "Remove a participant (it receives `disconnected`)",
			Body:   `{"type":"object","additionalProperties":false,"properties":{"reason":{"type":"string","maxLength":200}}}`,
			Status: 204, Answer: "Removed", Errors: []int{404}},
		{Method: "POST", Path: "/api/rooms/{id}/participants/{identity}/mute", Auth: Admin, Handler: a.mute,
			OperationID: "muteParticipant", Summary: "Pause a participant's audio (or video, or all) producers",
			Body:   `{"type":"object","additionalProperties":false,"properties":{"kind":{"type":"string","enum":["audio","video","all"],"default":"audio"}}}`,
			Status: 200, Answer: "The paused producers", Result: `{"type":"object","required":["producerIds"],"properties":{"producerIds":{"type":"array","items":{"type":"string"}}}}`, Errors: []int{404}},
		{Method: "GET", Path: "/api/media", Auth: Admin, Handler: a.media,
			OperationID: "listMedia", Summary: "The videos of the media folder (--media-dir)",
			Status: 200, Answer: "The library", Result: `{"type":"object","required":["enabled","items"],"properties":{"enabled":{"type":"boolean"},"items":{"type":"array","items":{"$ref":"#/components/schemas/MediaItem"}}}}`},
		{Method: "POST", Path: "/api/rooms/{id}/recordings", Auth: Admin, Handler: a.startRecording,
			OperationID: "startRecording", Summary: "Start recording a live room's stage (or chosen producers) to FLV, HLS and RTMP",
			Body: Ref("RecordingRequest"), Status: 201, Answer: "The recording", Result: Ref("Recording"), Errors: []int{404, 503, 507}},
		{Method: "GET", Path: "/api/rooms/{id}/recordings", Auth: Admin, Handler: a.listRecordings,
			OperationID: "listRecordings", Summary: "The room's recordings, newest first, running and finished",
			Status: 200, Answer: "The recordings", Result: `{"type":"object","required":["recordings"],"properties":{"recordings":{"type":"array","items":{"$ref":"#/components/schemas/Recording"}}}}`},
		{Method: "GET", Path: "/api/rooms/{id}/recordings/{rid}", Auth: Admin, Handler: a.getRecording,
			OperationID: "getRecording", Summary: "One recording",
			Status: 200, Answer: "The recording", Result: Ref("Recording"), Errors: []int{404}},
		{Method: "DELETE", Path: "/api/rooms/{id}/recordings/{rid}", Auth: Admin, Handler: a.stopRecording,
			OperationID: "stopRecording", Summary: "Stop a recording; answers when its files are final",
			Status: 200, Answer: "The stopped recording", Result: Ref("Recording"), Errors: []int{404}},
		{Method: "POST", Path: "/api/rooms/{id}/ingests", Auth: KeyOrHost, Handler: a.startIngest,
			OperationID: "createIngest", Summary: "Make an RTMP stream key for the room, or stream media into it over plain RTP",
			Body: Ref("IngestRequest"), Status: 201, Answer: "The stream key (type rtmp) or the ingest",
			Result: `{"oneOf":[{"$ref":"#/components/schemas/StreamKey"},{"$ref":"#/components/schemas/Ingest"}]}`, Errors: []int{403, 404, 409, 503, 507}},
		{Method: "DELETE", Path: "/api/rooms/{id}/ingests/{iid}", Auth: KeyOrHost, Handler: a.stopIngest,
			OperationID: "deleteIngest", Summary: "Revoke a stream key (its live publisher is cut off), or stop an ingest",
			Status: 200, Answer: "Revoked or stopped", Result: `{"type":"object"}`, Errors: []int{403, 404, 507}},
		{Method: "GET", Path: "/api/openapi.json", Auth: Public, Handler: a.openAPI,
			OperationID: "openapi", Summary: "This document",
			Status: 200, Answer: "OpenAPI 3 document", Result: `{"type":"object"}`},
	}
}
